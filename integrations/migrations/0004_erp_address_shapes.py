import integrations.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0003_xledger_claimant_subledger'),
    ]

    operations = [
        migrations.AlterField(
            model_name='integration',
            name='authority_host',
            field=models.URLField(blank=True, help_text='Business Central: the Entra ID (Azure AD) sign-in host.', validators=[integrations.validators.validate_sign_in_url]),
        ),
        migrations.AlterField(
            model_name='integration',
            name='company_id',
            field=models.CharField(blank=True, max_length=100, validators=[integrations.validators.validate_company_id]),
        ),
        migrations.AlterField(
            model_name='integration',
            name='environment',
            field=models.CharField(blank=True, max_length=100, validators=[integrations.validators.validate_environment]),
        ),
        migrations.AlterField(
            model_name='integration',
            name='tenant_id',
            field=models.CharField(blank=True, max_length=100, validators=[integrations.validators.validate_tenant_id]),
        ),
    ]
